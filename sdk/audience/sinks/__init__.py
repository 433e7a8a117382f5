"""Where audience records go: files, MQTT, Prometheus."""
