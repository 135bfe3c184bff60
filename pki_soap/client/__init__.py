"""The CA client: the SOAP client and the client's tasks."""
