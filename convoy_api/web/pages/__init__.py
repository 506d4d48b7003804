"""Page controllers, one module per area (sign-in, convoy, facilitating, profile, mail viewer)."""
