"""A head plugin with a bug of its own: importing it fails. Tests check that users get one line, not a traceback."""
raise RuntimeError("this plugin is broken on purpose")
