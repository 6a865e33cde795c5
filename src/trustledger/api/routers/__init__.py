"""One router per actor (sources, relying parties, subjects, operator) and the system routes."""
