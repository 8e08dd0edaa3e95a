"""Pipeline stages that turn one record into the next (see ../shared LAYOUT; issue 22 moves the rest here)."""
