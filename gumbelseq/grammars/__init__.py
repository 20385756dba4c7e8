"""Built-in Lark grammars, shipped inside the wheel. Top-level ``grammars/`` links here."""
