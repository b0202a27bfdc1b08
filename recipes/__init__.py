"""Reference build recipes (TOML), installed as edgeft.recipes; see `edgeft recipes list`."""
