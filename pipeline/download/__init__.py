"""What fills data/raw (the download stage): Kaggle client, local layouts, the demo, archives, competition checks."""
