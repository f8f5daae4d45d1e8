// Starts Swagger UI on /docs. A file, not an inline script: the docs page's Content-Security-
// Policy allows scripts from this service only (outreach/api/headers.py).
window.addEventListener("load", function () {
  window.ui = SwaggerUIBundle({
    url: "/openapi.json",
    dom_id: "#swagger-ui",
    deepLinking: true,
    presets: [SwaggerUIBundle.presets.apis],
    layout: "BaseLayout",
  });
});
