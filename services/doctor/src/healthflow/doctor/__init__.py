"""HealthFlow doctor service: practitioner profiles, licence verification, search, availability."""
