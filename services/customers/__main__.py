from customers.app import create_app
from customers.settings import Settings
from shopkit.serve import serve

serve(create_app, Settings())
