"""Audience measurement: visits, attention and privacy-safe aggregates from stream results."""
