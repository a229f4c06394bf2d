"""Protocol front ends: parse client requests, answer in the client's own format."""
