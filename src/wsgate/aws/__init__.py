"""wsgate on AWS: the Lambda adapter and the connections API over `@connections`."""
