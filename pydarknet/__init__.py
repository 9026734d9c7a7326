"""pydarknet: darknet's cfg and weights files, darknet's numbers, in Python."""
