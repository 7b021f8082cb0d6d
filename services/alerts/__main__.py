from alerts.app import create_app
from alerts.settings import Settings
from shopkit.serve import serve

serve(create_app, Settings())
