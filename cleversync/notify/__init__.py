"""Email run reports and alerts: what a message says, how it is sent, when it is due."""
