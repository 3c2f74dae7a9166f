"""The clients: the retry loop, keys, request bodies, Client and AsyncClient, streams, images, videos, downloads."""
