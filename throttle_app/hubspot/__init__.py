"""Everything that speaks HubSpot's protocol: request signatures, the API client, OAuth."""
