"""HealthFlow notification service: email, SMS, Web Push and the in-app feed.

Consumes ``appointment.*``, ``user.*`` (each type named), ``patient.consent_changed`` and the
doctor/hospital names; keeps its own read model of contacts and consents;
queues one delivery per message and channel under a deterministic id (so a
redelivered event sends nothing twice); sends through aiosmtplib, Twilio's
client and pywebpush; fires stored reminders; publishes ``notification.sent`` /
``notification.failed`` without bodies or addresses. Module map:
``handlers`` → ``service`` (queue) → ``dispatch`` (send, reminders) →
``providers`` (clients); ``domain`` holds the rules, ``rendering`` the Jinja2
templates. The loopback stand-ins for the providers and the local mailbox are
development tools (``healthflow.devkit.sandbox``, ``healthflow.devkit.mailbox``).
"""
