"""Reading and writing images, tables and the subjects sheet."""
