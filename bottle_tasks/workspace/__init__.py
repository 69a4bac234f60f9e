"""The workspace: which files enter the bottle (selection.py), which are credentials
(credentials.py), how they are packed (pack.py) and the image that carries them (image.py)."""
