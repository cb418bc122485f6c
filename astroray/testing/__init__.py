"""Testing aids that ship with astroray: the fuzz corpus of corrupted inputs and its runner (:mod:`.fuzz`)."""
