# Worker container for the Beam pipeline on Dataflow (and any portable runner).
#
# It holds this project (both observation sources) and, for the headless
# source (--engine sc2), the Linux StarCraft II game.  Build and push (see
# docs/pipeline.md):
#
#   docker build -t REGION-docker.pkg.dev/PROJECT/REPO/sc2-pipeline:latest \
#       --build-arg SC2_PACKAGE=SC2.4.10.zip .
#   docker push REGION-docker.pkg.dev/PROJECT/REPO/sc2-pipeline:latest
#
# and run with --sdk_container_image=<that tag> --sdk_location=container.
# Build with --build-arg SC2_PACKAGE= (empty) for an engine-free-only image.
#
# The game packages are Blizzard's (s2client-proto README, "Linux Packages");
# their zips are protected with the EULA password "iagreetotheeula": by
# building this image you accept the AI and Machine Learning License.

# The Beam SDK image must match the launcher's Beam and Python versions.
FROM apache/beam_python3.11_sdk:2.77.0

ARG SC2_PACKAGE=SC2.4.10.zip
ARG SC2_URL=http://blzdistsc2-a.akamaihd.net/Linux
ARG MAPS_URL=http://blzdistsc2-a.akamaihd.net/MapPacks
ARG MAP_PACKS="Ladder2017Season1.zip Ladder2017Season2.zip Ladder2017Season3_Updated.zip Ladder2017Season4.zip Ladder2018Season1.zip Ladder2018Season2_Updated.zip Ladder2019Season1.zip"

ENV SC2PATH=/opt/StarCraftII \
    PYTHONUNBUFFERED=1

RUN apt-get update \
    && apt-get install -y --no-install-recommends unzip wget ca-certificates \
    && rm -rf /var/lib/apt/lists/*

# The game (optional) and the ladder maps it needs to replay games.
RUN set -eux; \
    if [ -n "$SC2_PACKAGE" ]; then \
      wget -q "$SC2_URL/$SC2_PACKAGE" -O /tmp/sc2.zip; \
      unzip -q -P iagreetotheeula /tmp/sc2.zip -d /opt; \
      rm /tmp/sc2.zip; \
      mkdir -p "$SC2PATH/Maps"; \
      for pack in $MAP_PACKS; do \
        wget -q "$MAPS_URL/$pack" -O /tmp/maps.zip; \
        unzip -q -o -P iagreetotheeula /tmp/maps.zip -d "$SC2PATH/Maps"; \
        rm /tmp/maps.zip; \
      done; \
    fi

# This project, installed like on a workstation (pysc2 without its stale deps).
WORKDIR /opt/sc2-replay-pipeline
COPY pyproject.toml requirements-pysc2.txt README.md beam_runner.py ./
COPY pipeline ./pipeline
COPY schemas ./schemas
COPY datasets ./datasets
COPY trainers ./trainers
RUN pip install --no-cache-dir . \
    && pip install --no-cache-dir --no-deps -r requirements-pysc2.txt \
    && python -c "import pipeline.job.transforms, pipeline.sources.events.source"

# The Beam SDK harness stays the entry point.
ENTRYPOINT ["/opt/apache/beam/boot"]
