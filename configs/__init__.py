"""Configs: plain Python modules with a get_config() that returns a dict."""
