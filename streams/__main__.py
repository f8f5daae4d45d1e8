"""``python -m streams worker``: start a Faust worker of the Forewarn app."""

from forewarn.settings import keep_files_private

if __name__ == "__main__":
    keep_files_private()  # before the app creates its data folder
    from streams.app import app

    app.main()
