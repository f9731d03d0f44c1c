"""Networks of ContraLORD: LORD generator, encoders, heads, stage-1 codes, stage-2 momentum encoders."""
