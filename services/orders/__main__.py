from orders.app import create_app
from orders.settings import Settings
from shopkit.serve import serve

serve(create_app, Settings())
