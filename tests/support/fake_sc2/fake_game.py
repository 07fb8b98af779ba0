#!/usr/bin/env python3
"""A stand-in StarCraft II binary for tests: speaks the s2client protocol over
a websocket and replays a scripted scenario instead of a real game.

pysc2 launches it exactly as it launches ``Versions/Base<build>/SC2_x64``
(``-listen 127.0.0.1 -port N -dataDir D -tempDir T [-dataVersion H]``), and
talks to it through its own ``RemoteController``.  It answers ``ping``,
``replay_info``, ``start_replay``, ``game_info``, ``data``, ``observation``,
``step`` and ``quit`` from a JSON scenario (see ``tests/support/fake_sc2/README.md``)
found at ``<dataDir>/fake_sc2/scenarios/<sha256 of the replay bytes>.json``
(or ``default.json``).  Faults the scenario asks for (crash, hang, error
reply, crash at launch) let tests exercise recovery.  It listens only on
127.0.0.1 and refuses any other ``-listen`` address.

It depends only on numpy, protobuf, s2clientprotocol and websockets: it is
"the game" and deliberately knows nothing of pysc2 or of this project.
"""
from __future__ import annotations

import hashlib
import json
import os
import sys
import time

import numpy as np
from google.protobuf import json_format
from s2clientprotocol import common_pb2, sc2api_pb2 as sc_pb

# Bits per pixel the stand-in uses for each layer (binary layers packed 1 bit
# per pixel, as the game does; wide categorical/scalar layers 16 bits).
_ONE_BIT = {"creep", "power", "selected", "hallucinations", "cloaked", "blip",
            "active", "buildable", "pathable", "placeholder", "camera", "alerts"}
_SIXTEEN_BIT = {"unit_type", "unit_hit_points", "unit_energy", "unit_shields", "buffs"}
_RESULTS = {"Victory": sc_pb.Victory, "Defeat": sc_pb.Defeat, "Tie": sc_pb.Tie,
            "Undecided": sc_pb.Undecided}
_RACES = {"Terran": common_pb2.Terran, "Zerg": common_pb2.Zerg,
          "Protoss": common_pb2.Protoss, "Random": common_pb2.Random}


def _parse_args(argv: list[str]) -> dict[str, str]:
    out, i = {}, 0
    while i < len(argv):
        key = argv[i]
        if key.startswith("-") and i + 1 < len(argv) and not argv[i + 1].startswith("-"):
            out[key.lstrip("-")] = argv[i + 1]
            i += 2
        else:
            out[key.lstrip("-")] = ""
            i += 1
    return out


def _bits(name: str) -> int:
    if name in _ONE_BIT:
        return 1
    if name in _SIXTEEN_BIT:
        return 16
    return 8


def _image(array: np.ndarray, bits: int) -> common_pb2.ImageData:
    h, w = array.shape
    if bits == 1:
        data = np.packbits(array.astype(np.uint8).reshape(-1) & 1).tobytes()
    elif bits == 8:
        data = array.astype(np.uint8).tobytes()
    else:
        data = array.astype("<u2").tobytes()
    return common_pb2.ImageData(bits_per_pixel=bits, size=common_pb2.Size2DI(x=w, y=h),
                                data=data)


class Game:
    """The scripted game state of one connection."""

    def __init__(self, data_dir: str, args: dict[str, str]):
        self.data_dir = data_dir
        self.args = args
        self.root = os.path.join(data_dir, "fake_sc2")
        self.status = sc_pb.launched
        self.scenario: dict | None = None
        self.scenario_key = ""
        self.player = 0
        self.loop = 0
        self.reported_upto = 0
        self.options = None
        self.disable_fog = False

    # ------------------------------------------------------------- scenario
    def _load_scenario(self, replay_data: bytes) -> None:
        key = hashlib.sha256(replay_data).hexdigest()
        folder = os.path.join(self.root, "scenarios")
        for name in (key + ".json", "default.json"):
            path = os.path.join(folder, name)
            if os.path.exists(path):
                with open(path, encoding="utf-8") as f:
                    self.scenario = json.load(f)
                self.scenario_key = key
                return
        raise LookupError(f"no scenario for replay {key}")

    def _log(self, record: dict) -> None:
        with open(os.path.join(self.root, "requests.jsonl"), "a", encoding="utf-8") as f:
            f.write(json.dumps(record) + "\n")

    def fault(self, request: str) -> dict | None:
        """The scenario's fault for this request now, if it still has uses."""
        if not self.scenario:
            return None
        for index, fault in enumerate(self.scenario.get("faults", [])):
            if fault["request"] != request:
                continue
            if "player" in fault and fault["player"] != self.player:
                continue
            if "game_loop" in fault and fault["game_loop"] != self.loop:
                continue
            counter = os.path.join(self.root, "state", f"{self.scenario_key}.{index}")
            used = int(open(counter).read()) if os.path.exists(counter) else 0
            if used >= fault.get("times", 1):
                continue
            os.makedirs(os.path.dirname(counter), exist_ok=True)
            with open(counter, "w") as f:
                f.write(str(used + 1))
            return fault
        return None

    # ------------------------------------------------------------- answers
    def ping(self, _req, res):
        s = self.scenario or {}
        res.ping.game_version = s.get("game_version", "4.7.0")
        res.ping.data_version = self.args.get("dataVersion", "")
        res.ping.data_build = int(s.get("base_build", 0))
        res.ping.base_build = int(s.get("base_build", 0))

    def replay_info(self, req, res):
        self._load_scenario(req.replay_info.replay_data)
        s = self.scenario
        info = res.replay_info
        info.map_name = s["map_name"]
        info.local_map_path = s.get("local_map_path", "")
        info.game_duration_loops = int(s["game_loops"])
        info.game_duration_seconds = s["game_loops"] / 22.4
        info.game_version = s["game_version"]
        info.data_version = s.get("data_version", "")
        info.base_build = int(s["base_build"])
        info.data_build = int(s["base_build"])
        for p in s["players"]:
            extra = info.player_info.add()
            extra.player_info.player_id = p["player_id"]
            extra.player_info.type = sc_pb.Participant
            extra.player_info.race_requested = _RACES[p["race"]]
            extra.player_info.race_actual = _RACES[p["race"]]
            extra.player_result.player_id = p["player_id"]
            extra.player_result.result = _RESULTS[p["result"]]
            extra.player_mmr = p.get("mmr", 0)
            extra.player_apm = p.get("apm", 0)

    def start_replay(self, req, res):
        start = req.start_replay
        self._load_scenario(start.replay_data)
        s = self.scenario
        ids = [p["player_id"] for p in s["players"]]
        if start.observed_player_id not in ids:
            res.start_replay.error = sc_pb.ResponseStartReplay.InvalidObservedPlayerId
            res.start_replay.error_details = f"no player {start.observed_player_id}"
            return
        if s.get("local_map_path") and s.get("map_bytes_sha256"):
            if hashlib.sha256(start.map_data).hexdigest() != s["map_bytes_sha256"]:
                res.start_replay.error = sc_pb.ResponseStartReplay.InvalidMapData
                res.start_replay.error_details = "map data does not match the replay's map"
                return
        self.player = start.observed_player_id
        self.options = sc_pb.InterfaceOptions()
        self.options.CopyFrom(start.options)
        self.disable_fog = start.disable_fog
        self.loop = 0
        self.reported_upto = 0
        self.status = sc_pb.in_replay
        self._log({"request": "start_replay", "player": self.player,
                   "disable_fog": start.disable_fog,
                   "map_data_bytes": len(start.map_data),
                   "options": json_format.MessageToDict(start.options)})

    def game_info(self, _req, res):
        s = self.scenario
        gi = res.game_info
        gi.map_name = s["map_name"]
        gi.local_map_path = s.get("local_map_path", "")
        gi.start_raw.map_size.x, gi.start_raw.map_size.y = s["map_size"]
        for p in s["players"]:
            pi = gi.player_info.add()
            pi.player_id = p["player_id"]
            pi.type = sc_pb.Participant
            pi.race_requested = _RACES[p["race"]]
            pi.race_actual = _RACES[p["race"]]
        gi.options.CopyFrom(self.options)

    def data(self, _req, res):
        res.data.SetInParent()

    def step(self, req, res):
        count = max(int(req.step.count), 1)
        end = int(self.scenario.get("ends_at", self.scenario["game_loops"]))
        self.loop = min(self.loop + count, end)
        if self.loop >= end:
            self.status = sc_pb.ended
        res.step.simulation_loop = self.loop

    def _active(self, entry) -> bool:
        return entry.get("from", 0) <= self.loop < entry.get("to", 1 << 30)

    def observation(self, _req, res):
        s = self.scenario
        frame = s["frames"][str(self.player)]
        obs = res.observation.observation
        obs.game_loop = self.loop
        common = dict(frame.get("player_common", {}))
        for change in frame.get("player_changes", []):
            if self._active(change):
                common[change["field"]] = change["value"]
        obs.player_common.player_id = self.player
        for key, value in common.items():
            setattr(obs.player_common, key, int(value))
        # Score details by dotted path, e.g. "killed_minerals.army": 150.
        for path, value in frame.get("score", {}).items():
            *parents, leaf = path.split(".")
            message = obs.score.score_details
            for name in parents:
                message = getattr(message, name)
            setattr(message, leaf, float(value))
        for ab in frame.get("abilities", []):
            if self._active(ab):
                obs.abilities.add(ability_id=ab["ability_id"],
                                  requires_point=bool(ab.get("requires_point", False)))
        fl = self.options.feature_layer
        absent = set(s.get("absent_layers", []))
        for kind, res_xy, message in (
                ("screen", fl.resolution, obs.feature_layer_data.renders),
                ("minimap", fl.minimap_resolution, obs.feature_layer_data.minimap_renders)):
            planes = {f.name: np.zeros((res_xy.y, res_xy.x), np.int64)
                      for f in message.DESCRIPTOR.fields}
            for paint in frame.get("paint", []):
                if paint["set"] != kind or not self._active(paint):
                    continue
                x0, y0, x1, y1 = paint["rect"]
                planes[paint["layer"]][y0:y1, x0:x1] = paint["value"]
            for name, plane in planes.items():
                if name in absent:
                    continue
                getattr(message, name).CopyFrom(_image(plane, _bits(name)))
        for entry in frame.get("actions", []):
            if self.reported_upto <= entry["loop"] < self.loop:
                res.observation.actions.add().CopyFrom(
                    json_format.ParseDict(entry["action"], sc_pb.Action()))
        self.reported_upto = self.loop
        if self.status == sc_pb.ended:
            for p in s["players"]:
                res.observation.player_result.add(player_id=p["player_id"],
                                                  result=_RESULTS[p["result"]])

    def handle(self, req: sc_pb.Request) -> sc_pb.Response | None:
        kind = req.WhichOneof("request")
        res = sc_pb.Response(id=req.id)
        if kind == "quit":
            return None
        fault = self.fault(kind)
        if fault:
            self._log({"fault": fault["kind"], "request": kind, "loop": self.loop,
                       "player": self.player})
            if fault["kind"] == "crash":
                os._exit(3)
            if fault["kind"] == "hang":
                while True:
                    time.sleep(60)
            if fault["kind"] == "error":
                res.error.append(fault.get("message", "scripted failure"))
                res.status = self.status
                return res
        handler = getattr(self, kind, None)
        if handler is None:
            res.error.append(f"stand-in game does not implement {kind}")
        else:
            handler(req, res)
        res.status = self.status
        return res


def main(argv: list[str]) -> int:
    args = _parse_args(argv)
    host, port = args.get("listen", ""), int(args.get("port", "0"))
    if host != "127.0.0.1":
        print(f"fake SC2: refusing to listen on {host!r}", file=sys.stderr)
        return 2
    data_dir = args["dataDir"]
    root = os.path.join(data_dir, "fake_sc2")
    os.makedirs(root, exist_ok=True)
    with open(os.path.join(root, "launches.jsonl"), "a", encoding="utf-8") as f:
        f.write(json.dumps({"argv": [sys.argv[0]] + argv, "pid": os.getpid(),
                            "cwd": os.getcwd(),
                            "ld_library_path": os.environ.get("LD_LIBRARY_PATH", "")}) + "\n")
    crash_file = os.path.join(root, "crash_at_launch")
    if os.path.exists(crash_file):
        remaining = int(open(crash_file).read() or "0")
        if remaining > 0:
            with open(crash_file, "w") as f:
                f.write(str(remaining - 1))
            return 4

    from websockets.exceptions import ConnectionClosed
    from websockets.sync.server import serve

    def handler(ws):
        if ws.request.path != "/sc2api":
            ws.close(1008, "unknown endpoint")
            return
        game = Game(data_dir, args)
        while True:
            # pysc2 (websocket-client) sends the serialized requests as *text*
            # frames, as the real game accepts; take them as raw bytes.
            try:
                message = ws.recv(decode=False)
            except ConnectionClosed:
                return
            req = sc_pb.Request.FromString(message)
            res = game.handle(req)
            if res is None:  # quit: the game exits without answering
                ws.close()
                os._exit(0)
            ws.send(res.SerializeToString())

    with serve(handler, "127.0.0.1", port, max_size=None, compression=None) as server:
        server.serve_forever()
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
