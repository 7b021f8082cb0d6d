"""customers: registration, login, rotating refresh tokens, the JWKS, and the caller's own profile."""
