"""dingworker: run a dingsync Router as a long-lived process (``dingworker module:route``)."""
