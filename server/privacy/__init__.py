"""Personal data: masking NIK and No. KK per role, finding and exporting a person, erasure and retention."""
