"""Contact details for simulated customers, as a CRM export would carry them (issue 17: staff
must reach the customer on their channel).

Written by hand rather than with a fake-data library on purpose: every detail is reserved for
fiction, so a demo can never show (or a webhook send to) a real person's contact. Phone
numbers come from Ofcom's drama range (+44 7700 900000-900999), e-mail addresses from
``example.com`` (RFC 2606), streets are invented. The same customer id always gets the same
details.
"""

from __future__ import annotations

import hashlib

FIRST = (
    "Ada", "Ben", "Clara", "David", "Elif", "Farid", "Greta", "Hugo", "Ines", "Jonas", "Kaja",
    "Luca", "Mara", "Nils", "Olga", "Paul", "Rosa", "Sami", "Tara", "Ugo", "Vera", "Wim",
    "Yara", "Zoe",
)  # fmt: skip
LAST = (
    "Adler", "Berger", "Costa", "Dahl", "Engel", "Fischer", "Gruber", "Hansen", "Iversen",
    "Jansen", "Keller", "Lind", "Moreau", "Novak", "Olsen", "Peters", "Quist", "Roth",
    "Schmidt", "Tanaka", "Ullmann", "Vogel", "Weber", "Yilmaz",
)  # fmt: skip
STREETS = ("Birch Lane", "Canal Row", "Harbour Street", "Mill Road", "Orchard Way", "Quarry Hill")
TOWNS = {
    "north": "Northby",
    "south": "Southwick",
    "east": "Eastmere",
    "west": "Westford",
}


def contact_of(customer_id: str, territory: str) -> dict[str, str]:
    """Name, phone, e-mail and address for ``customer_id`` (deterministic, fictional).

    Examples
    --------
    >>> contact_of("C00001", "north") == contact_of("C00001", "north")
    True
    >>> contact_of("C00001", "north")["email"].endswith("@example.com")
    True
    """
    digest = hashlib.sha256(customer_id.encode()).digest()
    first, last = FIRST[digest[0] % len(FIRST)], LAST[digest[1] % len(LAST)]
    number = int.from_bytes(digest[2:4]) % 1000
    return {
        "name": f"{first} {last}",
        "phone": f"+44 7700 900{number:03d}",
        "email": f"{first}.{last}.{customer_id}@example.com".lower(),
        "address": f"{1 + digest[4] % 120} {STREETS[digest[5] % len(STREETS)]}, "
        f"{TOWNS.get(territory, territory.title())}",
    }
