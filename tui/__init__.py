"""lmconsole's Textual console. Heavy imports (textual, torch) happen on first use."""
