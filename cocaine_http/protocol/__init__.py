"""The sans-IO core: frames, catalogs, state tables. No sockets, threads, asyncio or clocks here."""
