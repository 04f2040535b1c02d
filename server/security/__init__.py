"""Who is calling and what they may touch: keys, passwords, tokens and the request guard."""
