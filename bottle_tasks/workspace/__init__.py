"""The workspace: which files enter the bottle (selection.py), which are credentials
(credentials.py), how they are packed (pack.py) and the image that carries them (image.py)."""

# The operator's file of what stays out of the copy (read by selection.py); here, where
# `pull` can name it without importing the selection code (pathspec) on every `inv`.
BOTTLEIGNORE = ".bottleignore"
