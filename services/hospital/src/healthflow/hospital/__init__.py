"""HealthFlow hospital service: hospitals (FHIR Organization), their departments and staff."""
