"""The grammar side: loading, language counts, regex terminals, the recogniser, training data, scoring. Imports no torch."""
