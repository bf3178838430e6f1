"""HealthFlow patient service: profiles (FHIR Patient), allergies, conditions, consents."""
