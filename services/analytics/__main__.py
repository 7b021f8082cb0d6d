from analytics.app import create_app
from analytics.settings import Settings
from shopkit.serve import serve

serve(create_app, Settings())
