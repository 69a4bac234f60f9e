"""One module per task topic; each ends in its own Collection `ns`."""
