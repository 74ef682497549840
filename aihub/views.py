from django.contrib.auth.decorators import login_not_required
from django.shortcuts import redirect, render


@login_not_required
def landing(request):
    if request.user.is_authenticated:
        return redirect("chat:index")
    return render(request, "landing.html")
