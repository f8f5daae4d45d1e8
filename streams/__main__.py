"""``python -m streams worker``: start a Faust worker of the Forewarn app."""

from streams.app import app

if __name__ == "__main__":
    app.main()
