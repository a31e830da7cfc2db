"""HTTP over Cocaine: the request/response envelope of the cocaine HTTP proxies."""
