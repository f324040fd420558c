"""Who reacts: the services, the command line, and the game rules they share."""
