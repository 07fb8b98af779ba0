"""Stage 1, replay bytes: everything that reads a ``.SC2Replay`` file.

``storage`` expands input patterns and reads bytes (local paths or any Beam
filesystem); ``archive`` opens the MPQ archive and decodes its parts with the
right s2protocol build; ``game_event_decoder`` compiles a protocol's type table
into a fast game-event decoder; ``s2protocol_speedup`` patches s2protocol's bit
reader; ``lobby`` parses the init data (slots, user ids, game options), which
the archive caches; ``decoded`` holds what both share (``ReplayError``, text).

Imports: no other stage (shared helpers and ``schemas`` only).
"""
