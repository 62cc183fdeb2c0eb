"""The route table for the plain functions in handlers.py: what a serverless.yml's
`websocket` events say, in Python.

    wsgate serve examples/lambda_chat/app.py
"""

from wsgate import App

app = App(
    name="lambda-chat",
    routes={
        "$connect": "handlers.connect",
        "$disconnect": "handlers.disconnect",
        "onMessage": "handlers.on_message",
        "$default": "handlers.default",
    },
)
