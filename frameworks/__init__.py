"""One package per framework, each with the same modules and function names."""
