"""wsgate on AWS: the Lambda adapter and the connections API over `@connections`.

Only what runs on Lambda lives here (it goes into the deployment zip); running a
serverless.yml or SAM app locally is `wsgate.offline`.
"""
