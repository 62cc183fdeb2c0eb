"""Authenticated chat: a token in the query string, checked before `$connect` runs.

    wsgate connect 'ws://127.0.0.1:8080/dev?token=ann-secret'
    {"action": "whoAmI"}               -> ann
    {"action": "say", "text": "hi"}    -> everyone receives "ann: hi"

No token: 401, and the authorizer never runs. An unknown token: 403. The authorizer's
`context` ({"user": "ann"}) reaches every later event as `requestContext.authorizer`.

    wsgate serve examples/auth.py
"""

from wsgate import App, connections

app = App(name="auth")  # routes on $request.body.action

#: A real app would look the token up in its user store, or verify a JWT.
USERS_BY_TOKEN = {"ann-secret": "ann", "bob-secret": "bob"}


@app.authorizer(identity_sources=["route.request.querystring.token"], simple=True)
def authorize(event, context):
    user = USERS_BY_TOKEN.get(event["queryStringParameters"]["token"])
    if user is None:
        return False  # 403
    return {"isAuthorized": True, "principalId": user, "context": {"user": user}}


def user_of(event):
    return event["requestContext"]["authorizer"]["user"]


@app.route("whoAmI")
async def who_am_i(event, context):
    await connections.send(event.connection_id, user_of(event))


@app.route("say")
async def say(event, context):
    await connections.broadcast(f"{user_of(event)}: {event.json.get('text', '')}")
