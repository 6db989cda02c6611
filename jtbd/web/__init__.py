"""The researcher's workbench, `jtbd serve`: a local web app over a study's codes and reviews."""
