"""The studio's Streamlit server: `streamlit run` with pages/ read only through app.py's navigation.

    python -m rcsd_core.cli.studio_server run app.py [streamlit options]     # what `rcsd app` runs

Streamlit treats an app with a `pages/` folder beside it as a file-based multipage app until the
main script first calls `st.navigation`. A fresh server whose first visitor opens a bookmark
(`/preview`) would run pages/preview.py on its own — lowercase file names and an "app" entry in
the sidebar, no page config, sometimes a blank page until a reload. Marking the app as a
navigation app before the server starts makes every first run go through app.py, which routes
`/preview` to the Preview page with the studio's own navigation.
"""

from __future__ import annotations

import sys


def main() -> None:
    try:
        from streamlit.runtime.pages_manager import PagesManager

        PagesManager.uses_pages_directory = False   # app.py's st.navigation sets the same on its first run
    except (ImportError, AttributeError):            # another Streamlit layout: its own default applies
        pass
    from streamlit.web.cli import main as streamlit_main

    sys.argv[0] = "streamlit"
    streamlit_main()


if __name__ == "__main__":
    main()
