"""Speech recognition pieces shared by the danger monitor's keyword spotter and call triage."""
