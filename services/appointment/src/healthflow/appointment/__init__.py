"""HealthFlow appointment service: free slots, bookings and their lifecycle."""
