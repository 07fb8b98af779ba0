"""The engine-free observation source and its internals.

``source`` (``EventsObservationSource``) walks the tracker events and the
player's inputs; ``unit_tracker`` keeps the units' state from tracker events;
``visible_units`` and ``fog`` decide what each player can see; ``rasterize``,
``disc_batch`` and ``feature_layers`` paint the screen and minimap layers;
``player_features`` fills the player and score vectors; ``available_actions``
builds the action masks; ``render`` draws samples for a person to look at.
Static unit facts are in ``data/unit_data.json``.

Imports: ``pipeline.sources.interface`` and the stages before ``sources``.
"""
