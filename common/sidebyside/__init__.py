"""docs/side-by-side.html: the three implementations in three columns, generated from the sources.

`python -m common.sidebyside` (`make read`) writes it. The sources are parsed with `ast`, never
imported, so the page builds where a framework is not installed; Pygments, markdown-it-py and
playwright (for the screenshot) are imported inside the functions that need them.
"""
